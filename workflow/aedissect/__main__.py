from aedissect.cli import main

raise SystemExit(main())
