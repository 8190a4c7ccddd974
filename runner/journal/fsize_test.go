package journal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"testing"

	"github.com/eventfn/eventfn/runner"
)

// TestFileSizeLimitIsAFullDisk runs the journal in a child process whose
// file size limit (RLIMIT_FSIZE) stops the log growing, as a full disk
// does: writes fail with the kernel's error, nothing is recorded by a
// failed write, and once the limit is raised writes succeed and the log
// replays cleanly.
func TestFileSizeLimitIsAFullDisk(t *testing.T) {
	if dir := os.Getenv("EVENTFN_JOURNAL_FSIZE_CHILD"); dir != "" {
		fsizeChild(dir)
		return
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestFileSizeLimitIsAFullDisk$", "-test.count=1")
	cmd.Env = append(os.Environ(), "EVENTFN_JOURNAL_FSIZE_CHILD="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "fsize child: ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	// The parent, without the limit, reads what the child left.
	j := open(t, dir, Options{})
	if _, dup := j.Duplicate("s", "after", []string{"k"}); !dup {
		t.Error("the completion written after the limit was raised is lost")
	}
}

func fsizeChild(dir string) {
	die := func(format string, a ...any) {
		fmt.Printf("fsize child: "+format+"\n", a...)
		os.Exit(1)
	}
	signal.Ignore(syscall.SIGXFSZ) // the write fails with EFBIG instead
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		die("getrlimit: %v", err)
	}
	old := lim
	lim.Cur = 6 << 20
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		die("setrlimit: %v", err)
	}
	j, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		die("open: %v", err)
	}
	key := strings.Repeat("k", 4000)
	var werr error
	var lost string
	for i := 0; i < 5000 && werr == nil; i++ {
		lost = fmt.Sprint("id", i)
		werr = j.Complete(runner.Completion{Source: "s", ID: lost, Keys: []string{key + lost}})
	}
	if !errors.Is(werr, syscall.EFBIG) {
		die("writes past the limit: %v, want EFBIG", werr)
	}
	if _, dup := j.Duplicate("s", lost, []string{key + lost}); dup {
		die("the failed completion counts")
	}
	if err := j.Probe(context.Background()); err == nil {
		die("probe succeeded at the limit")
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		die("setrlimit: %v", err)
	}
	if err := j.Probe(context.Background()); err != nil {
		die("probe after the limit was raised: %v", err)
	}
	if err := j.Complete(runner.Completion{Source: "s", ID: "after", Keys: []string{"k"}}); err != nil {
		die("complete after the limit was raised: %v", err)
	}
	if err := j.Close(); err != nil {
		die("close: %v", err)
	}
	fmt.Println("fsize child: ok")
}
