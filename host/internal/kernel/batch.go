package kernel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/baiagent/baiagent/host/internal/atomicfile"
	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// SessionTypeBatch is the session_type of a batch session, whose kernels'
// batch results a restarted agent still reports (agent/agent.py).
const SessionTypeBatch = "batch"

// BatchJobFile is config/batch-job.json: the batch job a kernel runs, kept
// until its result was reported so that an agent restarted in the middle
// reports it (upstream resumes every batch kernel, agent/agent.py
// _iterate_batch_result).
const BatchJobFile = "batch-job.json"

// BatchJob is a kernel's triggered batch job.
type BatchJob struct {
	SessionID string `json:"session_id"`
	// Deadline ends the job with task-timeout; zero means none. Kept as a
	// wall-clock time so that a restarted agent keeps the same bound.
	Deadline time.Time `json:"deadline,omitzero"`
	// Reported is set once session_success/session_failure went out.
	Reported bool `json:"reported,omitempty"`
}

func (m *Manager) batchJobPath(kernelID string) (string, error) {
	m.mu.Lock()
	k, ok := m.reg[kernelID]
	m.mu.Unlock()
	if !ok {
		return "", fmt.Errorf("%w: %s", ErrKernelNotFound, kernelID)
	}
	if k.dirs.Config == "" {
		return "", fmt.Errorf("%w: %s has no scratch dir yet", ErrNotRunning, kernelID)
	}
	return filepath.Join(k.dirs.Config, BatchJobFile), nil
}

// SaveBatchJob records the kernel's batch job.
func (m *Manager) SaveBatchJob(kernelID string, job BatchJob) error {
	path, err := m.batchJobPath(kernelID)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(job)
	if err != nil {
		return fmt.Errorf("batch job: %w", err)
	}
	// Durable: the point of the file is to survive the agent's death.
	return atomicfile.WriteDurable(path, append(raw, '\n'), 0o600)
}

// LoadBatchJob reads the kernel's batch job; ok is false when none was
// triggered.
func (m *Manager) LoadBatchJob(kernelID string) (job BatchJob, ok bool, err error) {
	path, err := m.batchJobPath(kernelID)
	if err != nil {
		return BatchJob{}, false, err
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return BatchJob{}, false, nil
	}
	if err != nil {
		return BatchJob{}, false, fmt.Errorf("batch job: %w", err)
	}
	if err := json.Unmarshal(raw, &job); err != nil {
		return BatchJob{}, false, fmt.Errorf("batch job %s: %w", path, err)
	}
	return job, true, nil
}

// AttachRun makes runID the kernel's active run without starting anything,
// so that continue collects the output of a run started before an agent
// restart (upstream's attach_output_queue).
func (m *Manager) AttachRun(ctx context.Context, kernelID, runID string) error {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return err
	}
	k.runner.Attach(runID)
	return nil
}

// RunnerStatus asks the kernel's runner for its status.
func (m *Manager) RunnerStatus(ctx context.Context, kernelID string) (protocol.Status, error) {
	k, err := m.running(ctx, kernelID)
	if err != nil {
		return protocol.Status{}, err
	}
	return k.runner.Status(ctx)
}
