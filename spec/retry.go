package spec

import "time"

// Retry says how often and how far apart a failing step is retried.
type Retry struct {
	// Attempts is the total number of tries, the first included (1 = no retry).
	Attempts int `yaml:"attempts"`
	// Backoff is constant, exponential or fibonacci.
	Backoff string `yaml:"backoff"`
	// Initial is the first delay.
	Initial time.Duration `yaml:"initial"`
	// Max caps each delay.
	Max time.Duration `yaml:"max"`
	// Jitter is the fraction (0..1) by which each delay varies at random.
	Jitter float64 `yaml:"jitter"`
}

// Merge fills the zero fields of p from def.
func (p Retry) Merge(def Retry) Retry {
	if p.Attempts == 0 {
		p.Attempts = def.Attempts
	}
	if p.Backoff == "" {
		p.Backoff = def.Backoff
	}
	if p.Initial == 0 {
		p.Initial = def.Initial
	}
	if p.Max == 0 {
		p.Max = def.Max
	}
	if p.Jitter == 0 {
		p.Jitter = def.Jitter
	}
	return p
}
