// Package soak holds eventfn's soak and chaos test (soak_test.go, build tag
// soak), run by scripts/soak.sh:
//
//	bash scripts/soak.sh                     # 30 minutes
//	SOAK_DURATION=2m bash scripts/soak.sh    # the CI mode
//
// Against the RabbitMQ on loopback (scripts/test-env.sh) it makes a virtual
// host with Waldur-style queues and a dead-letter queue, runs two eventfn
// processes built the release way (scripts/build.sh) on a rules file with a
// durable journal, and publishes Waldur events of all seven types at a
// steady rate while:
//
//   - the broker closes every connection of the virtual host every few
//     seconds (rabbitmqctl close_all_connections --vhost, so nothing else on
//     the broker is disturbed);
//   - one eventfn ("crash") is SIGKILLed and restarted every 20 to 30
//     seconds; the other ("steady") lives through the whole run, so that its
//     memory and goroutines can be compared early and late;
//   - a share of the messages fail at random: some once (retried to
//     success), some for good (on_failure, or the dead-letter queue,
//     depending on the source's policy), some cannot be decoded;
//   - the webhook every plan calls stalls for longer than the step's
//     timeout now and then, and recovers;
//   - a toggle stream to the steady runner (its own user_role queue and
//     source): every SOAK_TOGGLE_EVERY, for one of four projects in turn,
//     grant, revoke, grant, revoke of the same user (payloads 1 and 3, 2
//     and 4 identical: the same x-message-id within the dedup window), then
//     an exact republish of the last one with nothing between; two
//     projects get their bursts back to back (as Waldur publishes quick
//     successive changes), two spaced (each message once the runner has
//     settled the ones before). Every state change must run once (by its first
//     delivery; runs of redelivered copies are counted apart), every
//     project must end in its last change, the republishes must not run
//     and must be counted as duplicates.
//
// At the end it stops publishing and the chaos, waits for the queues to
// drain, stops both eventfn gracefully and proves by counting that every
// published message ended in effect in the success log, the on_failure log
// or the dead-letter queue (none lost, none in two places), and that memory
// and goroutines did not grow. The plans' effect step is not idempotent
// (each run appends to the success log) and is followed by a step that
// logs it recorded: an effect that runs again after the journal recorded
// it is a violation; one re-run because a SIGKILL came between the effect
// and its record is allowed and counted. It prints a summary and fails on any violation.
//
// Settings (environment): SOAK_DURATION (30m), SOAK_RATE (messages per
// second, 20), SOAK_CLOSE_EVERY (5s), SOAK_KILL_MIN/SOAK_KILL_MAX (20s/30s),
// SOAK_STALL_EVERY/SOAK_STALL_FOR (15s/3s), SOAK_SAMPLE_EVERY (2s),
// SOAK_DRAIN_TIMEOUT (6m), SOAK_TOGGLE_EVERY (500ms), SOAK_SEED (to repeat a run's choices), SOAK_KEEP=1
// (keep the work directory with the logs; it is kept anyway on failure),
// EVENTFN_BIN (a prebuilt binary instead of building one).
package soak
