from pltui.cli import main

raise SystemExit(main())
