"""``python -m hpo.report`` works like ``hpo-report``."""

from hpo.report.cli import main

raise SystemExit(main())
