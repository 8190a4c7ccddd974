package bench

import (
	"bufio"
	"bytes"
	"math/bits"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// histogram records durations in log-linear buckets: 64 per power of two,
// so a percentile is exact to within 1.6%, in a fixed 30 KiB whatever the
// number of samples (a slice of every sample would grow the RSS being
// measured). Safe for concurrent use.
type histogram struct {
	counts [60 << subBits]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

const subBits = 6

func bucketOf(v uint64) int {
	if v < 1<<subBits {
		return int(v)
	}
	e := bits.Len64(v) - subBits - 1 // v>>e is in [64, 128)
	return (e+1)<<subBits + int(v>>e) - 1<<subBits
}

// bucketMid returns the middle of bucket i's range.
func bucketMid(i int) uint64 {
	if i < 1<<subBits {
		return uint64(i)
	}
	e := i>>subBits - 1
	lo := uint64(i&(1<<subBits-1)+1<<subBits) << e
	return lo + (uint64(1)<<e)/2
}

// record adds one sample; negative ones (clock steps) count as zero.
func (h *histogram) record(d time.Duration) {
	v := max(int64(d), 0)
	h.counts[bucketOf(uint64(v))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			return
		}
	}
}

// Latency summarises a histogram, in milliseconds.
type Latency struct {
	Samples int     `json:"samples"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
}

func (h *histogram) summary() *Latency {
	n := h.n.Load()
	if n == 0 {
		return nil
	}
	q := func(p float64) float64 {
		rank := uint64(p*float64(n) + 0.5)
		rank = min(max(rank, 1), n)
		var seen uint64
		for i := range h.counts {
			seen += h.counts[i].Load()
			if seen >= rank {
				return ms(time.Duration(bucketMid(i)))
			}
		}
		return ms(time.Duration(h.max.Load()))
	}
	return &Latency{Samples: int(n), P50: q(0.50), P90: q(0.90), P99: q(0.99), Max: ms(time.Duration(h.max.Load()))}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// cpuTime returns the process's user plus system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memory returns the process's resident set size now and its peak
// (VmRSS and VmHWM of /proc/self/status), in bytes. Without /proc the
// peak comes from getrusage and the current size is 0.
func memory() (rss, peak int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			switch k {
			case "VmRSS":
				rss = kib(v)
			case "VmHWM":
				peak = kib(v)
			}
		}
	}
	if peak == 0 {
		var ru syscall.Rusage
		if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
			peak = ru.Maxrss * 1024 // kilobytes on Linux
		}
	}
	return rss, peak
}

func kib(v string) int64 {
	n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return n * 1024
}

// Machine describes where a benchmark ran.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	CPUModel   string `json:"cpu_model,omitempty"`
	GoVersion  string `json:"go_version"`
	Kernel     string `json:"kernel,omitempty"`
	Broker     string `json:"broker,omitempty"`
}

func machine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadAverage returns the 1-minute load average (0 when unknown): other
// work on a shared machine shows here.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}
