from certs import job

raise SystemExit(job.main())
