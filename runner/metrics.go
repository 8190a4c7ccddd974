package runner

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/eventfn/eventfn/rules"
)

// OtherLabel is the type label of events whose type the rules file does
// not name: event types come from the event (a queue name, an MQTT topic,
// a pushed envelope), and each label value is a series held forever.
const OtherLabel = "other"

// Metrics are the runner's Prometheus collectors, on a registry of their own
// (no global state).
type Metrics struct {
	Registry *prometheus.Registry

	Received     *prometheus.CounterVec   // source, type
	Settled      *prometheus.CounterVec   // source, type, fate (acked, dead_lettered, requeued)
	Rejected     *prometheus.CounterVec   // source, reason
	Duplicates   *prometheus.CounterVec   // source, type
	Resumed      *prometheus.CounterVec   // source
	Unmatched    *prometheus.CounterVec   // source, type
	RuleMatches  *prometheus.CounterVec   // rule
	RuleErrors   *prometheus.CounterVec   // rule
	Plans        *prometheus.CounterVec   // rule, outcome
	StepAttempts *prometheus.CounterVec   // kind, result (ok, error)
	StepFailures *prometheus.CounterVec   // kind
	StepLatency  *prometheus.HistogramVec // kind
	EndToEnd     *prometheus.HistogramVec // source
	InFlight     prometheus.Gauge
	Connected    *prometheus.GaugeVec   // source
	Reconnects   *prometheus.CounterVec // source
	Reloads      *prometheus.CounterVec // result (ok, error)
	// Parked counts copies of a message that arrived while it was in
	// flight and were settled with its fate.
	Parked *prometheus.CounterVec // source
	// JournalWriteFailures counts failed journal writes (and failed probes
	// while the journal is down).
	JournalWriteFailures prometheus.Counter
	// JournalWritable is 1 while the journal can be written, 0 while the
	// runner takes no messages because it cannot.
	JournalWritable prometheus.Gauge

	// types caches the event types the current rules file names.
	types atomic.Pointer[typeSet]
}

type typeSet struct {
	rs    *rules.Ruleset
	names map[string]bool
}

// TypeLabel returns t when the rules file rs names it (in a rule's on) or
// it is one of Waldur's types, else OtherLabel, so that the number of series stays
// bounded by the rules file whatever the events say.
func (m *Metrics) TypeLabel(rs *rules.Ruleset, t string) string {
	if t == "" {
		return "" // no event: nothing was decoded
	}
	if rs == nil {
		return OtherLabel
	}
	set := m.types.Load()
	if set == nil || set.rs != rs {
		set = &typeSet{rs: rs, names: map[string]bool{}}
		for _, name := range rs.Types() {
			set.names[name] = true
		}
		for _, name := range rules.WaldurTypes { // a fixed list: bounded too
			set.names[name] = true
		}
		delete(set.names, "*")
		m.types.Store(set)
	}
	if set.names[t] {
		return t
	}
	return OtherLabel
}

// NewMetrics creates the collectors on a new registry that also carries the
// Go runtime and process collectors.
func NewMetrics() *Metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	c := func(name, help string, labels ...string) *prometheus.CounterVec {
		v := prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "eventfn", Name: name, Help: help}, labels)
		reg.MustRegister(v)
		return v
	}
	buckets := []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}
	m := &Metrics{
		Registry:     reg,
		Received:     c("messages_received_total", "Messages received from sources.", "source", "type"),
		Settled:      c("messages_settled_total", "Messages settled, by fate (acked, dead_lettered, requeued).", "source", "type", "fate"),
		Rejected:     c("messages_rejected_total", "Messages that could not be decoded, by reason.", "source", "reason"),
		Duplicates:   c("messages_duplicate_total", "Messages skipped because their id was already handled.", "source", "type"),
		Resumed:      c("messages_resumed_total", "Messages whose plans resumed after their last completed step.", "source"),
		Unmatched:    c("messages_unmatched_total", "Messages no rule matched.", "source", "type"),
		RuleMatches:  c("rule_matches_total", "Plans started, by rule.", "rule"),
		RuleErrors:   c("rule_errors_total", "Rules whose when or key failed to evaluate.", "rule"),
		Plans:        c("plans_total", "Plans finished, by outcome (success, failed, interrupted).", "rule", "outcome"),
		StepAttempts: c("step_attempts_total", "Step attempts, by action kind and result.", "kind", "result"),
		StepFailures: c("step_failures_total", "Steps that failed for good, by action kind.", "kind"),
		Reconnects:   c("source_reconnects_total", "Reconnections of broker sources.", "source"),
		Reloads:      c("rules_reloads_total", "Rules reloads, by result (ok, error).", "result"),
		Parked:       c("messages_parked_total", "Copies of a message in flight, parked and settled with its fate.", "source"),
		JournalWriteFailures: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "eventfn", Name: "journal_write_failures_total",
			Help: "Failed journal writes; messages are left for redelivery meanwhile."}),
		JournalWritable: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "eventfn", Name: "journal_writable",
			Help: "1 while the journal can be written; 0 while no messages are taken because it cannot."}),
		StepLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "eventfn", Name: "step_duration_seconds",
			Help: "Duration of step attempts.", Buckets: buckets}, []string{"kind"}),
		EndToEnd: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "eventfn", Name: "message_duration_seconds",
			Help: "Time from receipt to settlement of a message.", Buckets: buckets}, []string{"source"}),
		InFlight:  prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "eventfn", Name: "plans_in_flight", Help: "Plans running or queued."}),
		Connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "eventfn", Name: "source_connected", Help: "1 when the source is connected and subscribed."}, []string{"source"}),
	}
	reg.MustRegister(m.StepLatency, m.EndToEnd, m.InFlight, m.Connected, m.JournalWriteFailures, m.JournalWritable)
	return m
}
