// Package slurm holds the integration tests of the SLURM site
// (examples/slurm-site) against a real SLURM accounting database: the rules
// run through the runner with the real slurm action, sacctmgr talks to the
// slurmdbd that scripts/test-env.sh brings up, and Waldur's API is an
// in-test server that records every call.
//
// The tests fail, not skip, when the accounting stack cannot be reached:
// they find it through $SLURM_CONF, else through the SLURM_CONF line of
// /var/tmp/eventfn-slurm/env (run `bash scripts/test-env.sh` to bring it up).
// Every test uses its own root account, prefixes and QoS, removed when it
// ends, so `go test -count=3` passes.
package slurm
