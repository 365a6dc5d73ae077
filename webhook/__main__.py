from webhook import cli

raise SystemExit(cli.main())
