package main

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// childPIDs returns the processes whose parent is this one (Linux /proc;
// none elsewhere).
func childPIDs() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …: comm may hold spaces and parentheses.
		rest := string(stat)
		if i := strings.LastIndexByte(rest, ')'); i >= 0 {
			rest = rest[i+1:]
		}
		f := strings.Fields(rest)
		if len(f) >= 2 {
			if ppid, err := strconv.Atoi(f[1]); err == nil && ppid == self {
				out = append(out, pid)
			}
		}
	}
	return out
}

// killChildren kills the commands eventfn started and their process
// groups (steps run in groups of their own, which a terminal's interrupt
// does not reach), so that a forced exit leaves none running.
func killChildren(pids []int) {
	for _, pid := range pids {
		_ = syscall.Kill(-pid, syscall.SIGKILL) // the group, when the child leads one
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}
