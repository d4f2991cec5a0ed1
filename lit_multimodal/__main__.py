"""``python -m lit_multimodal`` is ``lit-mm`` (DDP re-launches ranks through this module)."""

from lit_multimodal.cli import main

if __name__ == "__main__":
    main()
