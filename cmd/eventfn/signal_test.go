package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestValidateStopsOnSIGTERM runs `eventfn validate` (this test binary,
// re-executed as main) on a rules file that is a FIFO nobody writes to:
// loading blocks, and SIGTERM must still end the process at once.
func TestValidateStopsOnSIGTERM(t *testing.T) {
	if fifo := os.Getenv("EVENTFN_SIGNAL_CHILD"); fifo != "" {
		os.Args = []string{"eventfn", "validate", "-c", fifo}
		main()
		return
	}
	fifo := filepath.Join(t.TempDir(), "rules.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestValidateStopsOnSIGTERM$")
	cmd.Env = append(os.Environ(), "EVENTFN_SIGNAL_CHILD="+fifo)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Opening the FIFO for writing returns once validate has opened it
	// for reading: it is then blocked reading its rules.
	w, err := os.OpenFile(fifo, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("validate after SIGTERM: %v, stderr %q; want exit 130 and \"interrupted\"", err, stderr.String())
	}
}
