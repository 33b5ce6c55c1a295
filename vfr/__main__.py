from vfr.cli import main

main()
