"""A throwaway Kubernetes control plane on loopback for the e2e suite and `scripts/cluster`.

`pki` issues its certificates, `binaries` finds or builds its programs, `controlplane` starts
them, and `record` writes down everything acquired so `tear_down` works even after a killed run.
It lives under tests/ because it is test infrastructure: it is never part of the installed package.
"""
