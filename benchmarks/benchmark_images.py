"""Print the image ids a benchmark searches (one a line), for `vfr calibrate --exclude-groups FILE`: a
calibration that claims to travel to a benchmark must not have trained on that benchmark's images.

    python benchmarks/benchmark_images.py halc-xmodel opera-xmodel > out/unseen-images.txt

Ids are what calibration pairs use as groups: COCO images by their numeric id (e.g. "391895"); a document id
"IMAGE#n" (one of an image's captions or descriptions) counts as IMAGE.
"""
from __future__ import annotations

import sys


def images(bench: str) -> set[str]:
    from vfr.eval import benchmarks
    from vfr.eval.tasks import RetrievalTask

    ids: set[str] = set()
    for task in benchmarks.resolve(bench, None)[1]:
        if isinstance(task, RetrievalTask):
            docs = task.doc_target.values() if task.doc_target else task.corpus
            ids.update(d.split("#", 1)[0] for d in docs)   # "IMAGE#n": the n-th caption/description of IMAGE
    return ids


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    for bench in argv:
        found = images(bench)
        print(f"# {bench}: {len(found)} images")
        print("\n".join(sorted(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
