from fluxway.cli import main

raise SystemExit(main())
