package runner

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/eventfn/eventfn/rules"
)

// Reloader swaps a runner's rules for freshly loaded ones when asked (a
// signal, typically SIGHUP) or when one of the rules files changes. A new
// ruleset is used only when it loads without error: otherwise its errors are
// logged and the rules in force stay. Plans already started finish on the
// rules they started with.
//
// Only the rules are reloaded (rules, vars, defaults, includes): the
// sources, runner, waldur, slurm and secrets sections are read at start, and
// a change to them is logged as needing a restart.
type Reloader struct {
	// Runner receives the new rules.
	Runner *Runner
	// Load reads and checks the rules file afresh.
	Load func() (*rules.Ruleset, error)
	// Static, when set, names the sections read only at start that differ
	// in the file Load last read successfully (see config.StaticChanges).
	Static func() []string
	// Logger receives one line per reload (default: the runner's).
	Logger *slog.Logger
	// Debounce is how long the files must be quiet after a change before
	// they are read (editors write in several steps; default 250ms).
	Debounce time.Duration

	mu sync.Mutex // one reload at a time
}

// Reload loads the rules and, when they are good, puts them in force.
// reason says what asked for it, for the log. It returns the load error, if
// any; the old rules are then still in force.
func (rl *Reloader) Reload(reason string) error {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	log := rl.logger()
	m := rl.Runner.Metrics()
	rs, err := rl.Load()
	if err != nil {
		m.Reloads.WithLabelValues("error").Inc()
		problems := []string{err.Error()}
		var el rules.ErrorList
		if errors.As(err, &el) {
			problems = problems[:0]
			for _, e := range el {
				problems = append(problems, e.Error())
			}
		}
		log.Error("rules reload failed; the rules in force stay", "reason", reason,
			"problems", len(problems), "error", strings.Join(problems, "; "))
		return err
	}
	old := rl.Runner.Rules()
	rl.Runner.SetRules(rs)
	m.Reloads.WithLabelValues("ok").Inc()
	log.Info("rules reloaded", "reason", reason, "rules", len(rs.Rules), "files", len(rs.Files))
	if old != nil {
		changed := staticChanges(old, rs)
		if rl.Static != nil {
			changed = append(rl.Static(), changed...)
		}
		if len(changed) > 0 {
			log.Warn("rules reloaded, but these sections are read only at start: restart eventfn to apply them",
				"sections", strings.Join(changed, ", "))
		}
	}
	return nil
}

// Run reloads on every value from signals and whenever a rules file of the
// rules in force changes, until ctx ends.
func (rl *Reloader) Run(ctx context.Context, signals <-chan os.Signal) error {
	stop := rl.Start(ctx, signals)
	<-ctx.Done()
	stop()
	return nil
}

// Start is Run in the background: it returns once the rules files are
// watched, so that a change made after it returns is seen. Reloading goes
// on until ctx ends or stop is called; stop waits until it has ended.
// Without a working file watch (too many watches, an unsupported file
// system) it logs why and goes on with signals only.
func (rl *Reloader) Start(ctx context.Context, signals <-chan os.Signal) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	log := rl.logger()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("cannot watch the rules files; reload with SIGHUP", "error", err)
		w = nil
	}
	dirs := map[string]bool{}
	var files map[string]bool
	if w != nil {
		files = rl.watch(w, dirs)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if w != nil {
			defer w.Close()
		}
		rl.loop(ctx, signals, w, files, dirs)
	}()
	return func() {
		cancel()
		<-done
	}
}

func (rl *Reloader) loop(ctx context.Context, signals <-chan os.Signal, w *fsnotify.Watcher, files, dirs map[string]bool) {
	debounce := rl.Debounce
	if debounce <= 0 {
		debounce = 250 * time.Millisecond
	}
	var events chan fsnotify.Event
	var errs chan error
	if w != nil {
		events, errs = w.Events, w.Errors
	}
	rewatch := func() {
		if w != nil {
			files = rl.watch(w, dirs)
		}
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case sig, ok := <-signals:
			if !ok {
				signals = nil
				continue
			}
			name := "signal"
			if sig != nil {
				name = sig.String()
			}
			_ = rl.Reload(name)
			rewatch()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if relevant(ev, files) {
				timer.Reset(debounce)
			}
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			rl.logger().Warn("watching the rules files", "error", err)
		case <-timer.C:
			_ = rl.Reload("file changed")
			rewatch()
		}
	}
}

// watch makes sure the directory of every rules file in force is watched
// (a directory, not the file: editors and Kubernetes replace files by
// renaming) and returns the set of those files.
func (rl *Reloader) watch(w *fsnotify.Watcher, dirs map[string]bool) map[string]bool {
	files := map[string]bool{}
	rs := rl.Runner.Rules()
	if rs == nil {
		return files
	}
	for _, f := range rs.Files {
		abs, err := filepath.Abs(f)
		if err != nil {
			continue
		}
		files[abs] = true
		dir := filepath.Dir(abs)
		if dirs[dir] {
			continue
		}
		if err := w.Add(dir); err != nil {
			rl.logger().Warn("cannot watch a rules directory; reload with SIGHUP", "dir", dir, "error", err)
			continue
		}
		dirs[dir] = true
	}
	return files
}

// relevant reports whether a file event may change the rules: a write,
// creation, removal or rename of a rules file, a new YAML file (a new
// include), or Kubernetes swapping a ConfigMap volume's ..data link.
func relevant(ev fsnotify.Event, files map[string]bool) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if abs, err := filepath.Abs(name); err == nil {
		name = abs
	}
	if files[name] || filepath.Base(name) == "..data" {
		return true
	}
	ext := strings.ToLower(filepath.Ext(name))
	return ev.Has(fsnotify.Create) && (ext == ".yaml" || ext == ".yml")
}

// staticChanges names the rules-file sections that differ between two
// rulesets but are used only at start.
func staticChanges(old, cur *rules.Ruleset) []string {
	if !reflect.DeepEqual(old.Secrets, cur.Secrets) {
		return []string{"secrets"}
	}
	return nil
}

func (rl *Reloader) logger() *slog.Logger {
	if rl.Logger != nil {
		return rl.Logger
	}
	return rl.Runner.log
}
