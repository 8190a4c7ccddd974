package actions

import (
	"context"
	"errors"
)

// SlurmConfig configures slurm steps. (Placeholder: replaced by the full
// implementation.)
type SlurmConfig struct {
	// Sacctmgr is the path of sacctmgr (default "sacctmgr" on PATH).
	Sacctmgr string `yaml:"sacctmgr"`
	// Cluster, when set, is added as cluster=<name>.
	Cluster string `yaml:"cluster"`
}

var slurmSpec = Spec{Keys: []string{"args", "command", "cluster"}, Shorthand: "args"}

// Slurm runs SLURM commands.
type Slurm struct{ cfg SlurmConfig }

// NewSlurm returns a slurm action.
func NewSlurm(cfg SlurmConfig) *Slurm { return &Slurm{cfg: cfg} }

// Run implements Action.
func (s *Slurm) Run(ctx context.Context, req Request) (Result, error) {
	return nil, Permanent(errors.New("slurm: not implemented yet"))
}
