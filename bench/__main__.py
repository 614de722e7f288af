"""`python -m bench --only earn,balance --duration 10 --clients 32`."""

from bench.runner import main

raise SystemExit(main())
