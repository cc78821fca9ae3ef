from ccyclegan.cli.commands import main

raise SystemExit(main())
