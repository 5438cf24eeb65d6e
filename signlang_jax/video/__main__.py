"""`python -m signlang_jax.video`: see signlang_jax/video/cli.py."""

from signlang_jax.video.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
