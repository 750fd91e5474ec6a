"""`python -m ottermq ...`: the same command line as the `ottermq` script."""

from ottermq.cli import main

if __name__ == "__main__":
    main()
