// Command eventfn runs declarative rules against events from Waldur (over
// STOMP or MQTT on RabbitMQ) or local sources.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"

	dto "github.com/prometheus/client_model/go"

	"github.com/eventfn/eventfn/runner"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

type command struct {
	name, summary, usage string
	run                  func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

func commands() []command {
	return []command{
		{"run", "run sources → rules → actions until SIGTERM", runUsage, cmdRun},
		{"validate", "load and check a rules file; exit 1 with positions", validateUsage, cmdValidate},
		{"dry-run", "print the rules that match events and their rendered steps", dryRunUsage, cmdDryRun},
		{"test", "run rule unit tests", testUsage, cmdTest},
		{"publish", "send Waldur-shaped events to a broker (tests, demos, load)", publishUsage, cmdPublish},
		{"replay", "move dead-lettered messages back to their queues, to run again", replayUsage, cmdReplay},
		{"record", "copy a queue's messages into an event file, without consuming them", recordUsage, cmdRecord},
		{"bench", "measure eventfn's throughput, latency, CPU and memory against a broker", benchUsage, cmdBench},
		{"healthcheck", "exit 0 when a running eventfn answers ready (container health check)", healthcheckUsage, cmdHealthcheck},
		{"schema", "print the JSON Schema of the rules file", schemaUsage, cmdSchema},
		{"docs", "print (or update in README.md) the action reference", docsUsage, cmdDocs},
		{"completion", "print a shell completion script (bash, zsh, fish)", completionUsage, cmdCompletion},
		{"version", "print the version, commit and Go version", versionUsage, cmdVersion},
	}
}

func main() {
	ctx, cancel := context.WithCancel(context.Background())
	ints := &interrupts{}
	ctx = context.WithValue(ctx, interruptsKey{}, ints)
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	ints.release = func() { signal.Stop(sig) }
	ints.kill = func() { killChildren(childPIDs()) }
	// validate, dry-run and test read and check files and change nothing:
	// they stop at once on SIGTERM/SIGINT, whatever they are doing
	// (loading a huge file included).
	ints.immediate = len(os.Args) > 1 && slices.Contains([]string{"validate", "dry-run", "test"}, os.Args[1])
	go ints.watch(sig, cancel, os.Stderr, os.Exit)
	code := dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr)
	signal.Stop(sig)
	cancel()
	os.Exit(code)
}

// interrupts handles SIGINT/SIGTERM: the first cancels the command's
// context (run lets in-flight plans finish); the second exits at once,
// after saying what was in flight.
type interrupts struct {
	// inFlight, set by run, describes the work a forced exit abandons.
	inFlight atomic.Pointer[func() string]
	// release gives the signals back to their default action (exit).
	release func()
	// kill ends the commands still running before a forced exit.
	kill func()
	// immediate makes the first interrupt exit at once (commands that
	// change nothing).
	immediate bool
}

type interruptsKey struct{}

// setInFlight tells a second interrupt how to describe what is in flight.
func setInFlight(ctx context.Context, describe func() string) {
	if ints, ok := ctx.Value(interruptsKey{}).(*interrupts); ok {
		ints.inFlight.Store(&describe)
	}
}

// plansInFlight says how many plans are running or queued.
func plansInFlight(m *runner.Metrics) string {
	var g dto.Metric
	if err := m.InFlight.Write(&g); err != nil {
		return "plans in flight unknown"
	}
	n := int(g.GetGauge().GetValue())
	if n == 1 {
		return "1 plan in flight"
	}
	return fmt.Sprintf("%d plans in flight", n)
}

func (i *interrupts) watch(sig <-chan os.Signal, cancel context.CancelFunc, stderr io.Writer, exit func(int)) {
	s := <-sig
	cancel()
	if i.immediate {
		fmt.Fprintln(stderr, "eventfn: interrupted")
		exit(130)
		return
	}
	d := i.inFlight.Load()
	if d == nil {
		// Not run: the command stops on its own; another interrupt
		// ends the process the default way.
		if i.release != nil {
			i.release()
		}
		return
	}
	fmt.Fprintf(stderr, "eventfn: %v: stopping; in-flight plans finish first (%s); interrupt again to exit now\n", s, (*d)())
	<-sig
	fmt.Fprintf(stderr, "eventfn: second interrupt: exiting now with %s; their commands are killed, their messages stay unacknowledged and are redelivered\n", (*d)())
	if i.kill != nil {
		i.kill()
	}
	exit(130)
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		return cmdVersion(ctx, args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return c.run(ctx, args[1:], stdout, stderr)
		}
	}
	fmt.Fprintf(stderr, "eventfn: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "eventfn: declarative event runner for Waldur and HPC sites")
	fmt.Fprintln(w, "\nusage: eventfn COMMAND [flags]\n\ncommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun `eventfn COMMAND --help` for a command's flags and an example.")
}

// newFlags returns a flag set that prints the command's usage text.
func newFlags(name, text string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, text)
		fmt.Fprintln(stderr, "\nflags:")
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, allowing flags after positional arguments.
// It returns the positional arguments and an exit code (-1 to go on).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, int) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, 0
			}
			return nil, 2
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, -1
		}
		if args[0] == "-" || !strings.HasPrefix(args[0], "-") {
			pos = append(pos, args[0])
			args = args[1:]
			if len(args) == 0 {
				return pos, -1
			}
			continue
		}
	}
}

const versionUsage = `usage: eventfn version [-o text|json]

Prints eventfn's version, the module version and VCS commit it was built from,
and the Go version (from the binary's build information). eventfn --version
prints the same.

example:
  eventfn version -o json
`

// buildVersion is what the binary says of itself.
type buildVersion struct {
	Version  string `json:"version"`
	Module   string `json:"module,omitempty"`
	Commit   string `json:"commit,omitempty"`
	Time     string `json:"commit_time,omitempty"`
	Modified bool   `json:"modified,omitempty"`
	Go       string `json:"go"`
	Platform string `json:"platform"`
}

func readVersion() buildVersion {
	v := buildVersion{Version: version, Go: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return v
	}
	v.Module = bi.Main.Path + " " + bi.Main.Version
	if v.Version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		v.Version = bi.Main.Version // go install …@v1.2.3
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.Time = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", versionUsage, stderr)
	output := fs.String("o", "text", "output format: text, json or yaml")
	if _, code := parseFlags(fs, args); code >= 0 {
		return code
	}
	v := readVersion()
	if *output != "text" {
		if !validOutput(*output) {
			fmt.Fprintf(stderr, "eventfn: -o %q: want text, json or yaml\n", *output)
			return 2
		}
		if err := printData(stdout, *output, v); err != nil {
			fmt.Fprintln(stderr, "eventfn:", err)
			return 1
		}
		return 0
	}
	fmt.Fprintf(stdout, "eventfn %s\n", v.Version)
	if v.Module != "" {
		fmt.Fprintf(stdout, "  module  %s\n", v.Module)
	}
	if v.Commit != "" {
		c := v.Commit
		if v.Modified {
			c += " (modified)"
		}
		if v.Time != "" {
			c += " " + v.Time
		}
		fmt.Fprintf(stdout, "  commit  %s\n", c)
	}
	fmt.Fprintf(stdout, "  go      %s %s\n", v.Go, v.Platform)
	return 0
}

// newLogger returns a slog logger writing text or JSON to w; "auto" (or
// "") means text when w is a terminal, JSON otherwise.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	if format == "" || format == "auto" {
		format = "json"
		if isTerminal(w) {
			format = "text"
		}
	}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want auto, text or json", format)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// configPath returns -c's value, else $EVENTFN_CONFIG.
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("EVENTFN_CONFIG")
}
