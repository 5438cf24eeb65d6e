"""`python -m signlang_jax.synth`: write a synthetic still-image dataset (see `--help`)."""

from signlang_jax.synth.cli import main

raise SystemExit(main())
