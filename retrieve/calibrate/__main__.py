"""`python -m vfr.retrieve.calibrate --pairs … --out …` runs `vfr calibrate`: the module form torchrun needs
for multi-GPU training (`torchrun --nproc_per_node 4 -m vfr.retrieve.calibrate …`)."""
import typer

from vfr.cmd_calibrate import calibrate_cmd

if __name__ == "__main__":
    typer.run(calibrate_cmd)
