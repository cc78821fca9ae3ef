from ccyclegan.cli import main

raise SystemExit(main())
