"""`python -m aitraining [overrides]`."""

from aitraining.app import main

if __name__ == "__main__":
    main()
