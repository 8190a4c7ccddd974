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
	"strings"
	"syscall"
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
		{"bench", "measure eventfn's throughput, latency, CPU and memory against a broker", benchUsage, cmdBench},
		{"healthcheck", "exit 0 when a running eventfn answers ready (container health check)", healthcheckUsage, cmdHealthcheck},
		{"schema", "print the JSON Schema of the rules file", schemaUsage, cmdSchema},
		{"docs", "print (or update in README.md) the action reference", docsUsage, cmdDocs},
		{"version", "print the version", "usage: eventfn version\n", cmdVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(dispatch(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func dispatch(ctx context.Context, args []string, stdout, stderr io.Writer) int {
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

func cmdVersion(_ context.Context, _ []string, stdout, _ io.Writer) int {
	fmt.Fprintf(stdout, "eventfn %s\n", version)
	return 0
}

// newLogger returns a slog logger writing text or JSON to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// configPath returns -c's value, else $EVENTFN_CONFIG.
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("EVENTFN_CONFIG")
}
