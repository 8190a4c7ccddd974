// Package slurm holds the integration tests of the SLURM site
// (examples/slurm-site) against a real SLURM accounting database: the
// example's rules, verbatim with the test's settings, run as `eventfn run`
// in its own process (built once per package run), consuming Waldur's
// queues in a vhost of their own on the real RabbitMQ, where each test
// publishes its events as Waldur does; sacctmgr talks to the slurmdbd that
// scripts/test-env.sh brings up, through a wrapper that records each call;
// Waldur's API is an in-test server that records every call. A message
// counts as handled once the process's /metrics say it was settled; the
// reconciliation test runs the example's reconcile.yaml and timer too.
//
// The tests fail, not skip, when the accounting stack or the broker cannot
// be reached: they find SLURM through $SLURM_CONF, else through the
// SLURM_CONF line of /var/tmp/eventfn-slurm/env (run `bash
// scripts/test-env.sh` to bring it up). Every test uses its own root
// account, prefixes, QoS and vhost, removed when it ends, so `go test
// -count=3` passes. The tests run one after another: one eventfn process
// writes to slurmdbd at a time.
package slurm
