"""``python -m lit_multimodal`` is ``lit-mm`` (DDP re-launches ranks through this module)."""

from lit_multimodal.entry import main

if __name__ == "__main__":
    main()
