"""``vit-explain-studio``: serve the installed app from any folder.

It runs ``streamlit run`` on this package's ``streamlit_app.py`` with the settings of this package's
``config.toml`` (the same file as the repository's ``.streamlit/config.toml``, which ``streamlit run app.py``
reads in a checkout) given as command-line options, so the app behaves the same wherever it is started.
Further arguments go to Streamlit, e.g. ``vit-explain-studio --server.port 8080``.
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
CONFIG = PACKAGE / "config.toml"
SCRIPT = PACKAGE / "streamlit_app.py"


def _read_toml(path: Path) -> dict:
    try:
        import tomllib  # Python 3.11+
    except ModuleNotFoundError:  # Python 3.10: Streamlit depends on the toml package
        import toml

        return toml.loads(path.read_text(encoding="utf-8"))
    return tomllib.loads(path.read_text(encoding="utf-8"))


def config_options(path: Path = CONFIG) -> list[str]:
    """The settings of ``config.toml`` as Streamlit command-line options (``--section.key=value``)."""
    options = []
    for section, values in _read_toml(path).items():
        for key, value in values.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            options.append(f"--{section}.{key}={text}")
    return options


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    from explainers._extras import require
    from explainers.errors import MissingExtraError

    try:
        streamlit_cli = require("streamlit.web.cli", "vit-explain-studio (the app)")
    except MissingExtraError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sys.argv = ["streamlit", "run", str(SCRIPT), *config_options(), *args]
    return streamlit_cli.main()


if __name__ == "__main__":
    sys.exit(main())
