package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/baiagent/baiagent/host/internal/runner/protocol"
)

// modelSettle is how long a model service without health checks must stay
// up to count as started. Upstream answers "started" as soon as the
// process is spawned, so a command that exits at once is never noticed;
// this short wait turns it into a failed start, which the agent's
// failed-to-start destroy then reports.
const modelSettle = time.Second

// modelStart is a started model service for the health monitor.
type modelStart struct {
	name   string
	proc   *serviceProcess
	health *protocol.ModelHealthCheck
	port   int
}

// StartModel starts a model service as upstream's start_model_service: a
// service definition made of start_command, shell and pre_start_actions
// (the prestart actions through the same code as the image's services),
// run in the model path with no port wait. Ours then waits for it to be
// ready: with health checks until the first probe passes (failed when the
// process exits first or more than max_retries probes after
// initial_delay fail), otherwise until it stayed up modelSettle.
func (s *services) StartModel(ctx context.Context, model protocol.ModelInfo) (protocol.ServiceResult, *modelStart) {
	if model.Service == nil {
		return failed("service info not provided"), nil
	}
	svc := model.Service
	name := model.ServiceName()
	if svc.StartCommand == nil || *svc.StartCommand == "" {
		return failed("model %s has no start command", model.Name), nil
	}
	def := serviceDefinition{commandString: *svc.StartCommand, isString: true}
	if svc.Shell != nil {
		def.shell = *svc.Shell
	}
	for _, a := range svc.PreStartActions {
		args := make(map[string]json.RawMessage, len(a.Args))
		for k, v := range a.Args {
			raw, err := json.Marshal(v)
			if err != nil {
				return failed("pre_start_actions %s: %v", a.Action, err), nil
			}
			args[k] = raw
		}
		pa := prestartAction{action: a.Action, args: args}
		if a.Ref != nil {
			pa.ref = *a.Ref
		}
		def.prestart = append(def.prestart, pa)
	}

	select {
	case s.startLock <- struct{}{}:
	case <-ctx.Done():
		return failed("%v", ctx.Err()), nil
	}
	res, proc := s.spawnModel(ctx, name, model.ModelPath, svc.Port, def)
	<-s.startLock
	if proc == nil {
		return res, nil
	}
	started := &modelStart{name: name, proc: proc, health: svc.HealthCheck, port: svc.Port}
	if svc.HealthCheck == nil || !svc.HealthCheck.Enable {
		t := time.NewTimer(modelSettle)
		defer t.Stop()
		select {
		case <-proc.exited:
			s.forget(name, proc)
			return failed("the model service exited at once: %s", name), nil
		case <-ctx.Done():
			return failed("%v", ctx.Err()), nil
		case <-t.C:
			return protocol.ServiceResult{Status: "started"}, started
		}
	}
	if err := s.firstHealthy(ctx, started); err != nil {
		s.forget(name, proc)
		terminate(proc, serviceLaunchKillAfter)
		return failed("%v", err), nil
	}
	return protocol.ServiceResult{Status: "started"}, started
}

// spawnModel runs the prestart actions and spawns the command in the
// model path; s.startLock is held.
func (s *services) spawnModel(ctx context.Context, name, modelPath string, port int, def serviceDefinition) (protocol.ServiceResult, *serviceProcess) {
	s.mu.Lock()
	proc, ok := s.running[name]
	s.mu.Unlock()
	if ok && proc.alive() {
		return protocol.ServiceResult{Status: "running"}, nil
	}
	if st, err := os.Stat(modelPath); err != nil || !st.IsDir() {
		return failed("the model directory does not exist: %s", modelPath), nil
	}
	argv, env, err := s.prepare(ctx, protocol.ServiceRequest{Name: name, Port: port}, []int{port}, def)
	if err != nil {
		return failed("%v", err), nil
	}
	res := s.spawn(ctx, name, argv, env, modelPath, 0)
	if res.Status != "started" {
		return res, nil
	}
	s.mu.Lock()
	proc = s.running[name]
	s.mu.Unlock()
	return res, proc
}

// probe is one health check: GET http://localhost:{port}{path} within
// max_wait_time, healthy on expected_status_code.
func probe(ctx context.Context, port int, hc *protocol.ModelHealthCheck) bool {
	pctx, cancel := context.WithTimeout(ctx, time.Duration(hc.MaxWaitTime*float64(time.Second)))
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, "http://localhost:"+strconv.Itoa(port)+hc.Path, nil)
	if err != nil {
		return false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == hc.ExpectedStatusCode
}

// sleepRest waits out the rest of one interval after a probe that took
// since; false when ctx ended or the process exited.
func sleepRest(ctx context.Context, proc *serviceProcess, interval time.Duration, since time.Time) bool {
	rest := interval - time.Since(since)
	if rest <= 0 {
		rest = 0
	}
	t := time.NewTimer(rest)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-proc.exited:
		return false
	}
}

// firstHealthy probes from the start (as upstream, initial_delay does not
// delay the first probe) until one passes; failures within initial_delay
// do not count against max_retries.
func (s *services) firstHealthy(ctx context.Context, st *modelStart) error {
	hc := st.health
	interval := time.Duration(hc.Interval * float64(time.Second))
	grace := time.Now().Add(time.Duration(hc.InitialDelay * float64(time.Second)))
	retries := 0
	for {
		began := time.Now()
		if probe(ctx, st.port, hc) {
			return nil
		}
		if time.Now().After(grace) {
			retries++
			if retries > hc.MaxRetries {
				return fmt.Errorf("the model service %s failed %d health checks", st.name, retries)
			}
		}
		if !sleepRest(ctx, st.proc, interval, began) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("the model service %s exited before its first passing health check", st.name)
		}
	}
}

// monitorModel keeps probing a started model service as upstream's
// check_model_health and reports each change (healthy, or unhealthy after
// more than max_retries failures) until ctx ends or the process exits.
// Without health checks it reports healthy once, as upstream.
func (s *services) monitorModel(ctx context.Context, modelName string, st *modelStart, report func(protocol.ModelServiceStatus)) {
	if st.health == nil || !st.health.Enable {
		report(protocol.ModelServiceStatus{ModelName: modelName, IsHealthy: true})
		return
	}
	report(protocol.ModelServiceStatus{ModelName: modelName, IsHealthy: true})
	interval := time.Duration(st.health.Interval * float64(time.Second))
	healthy, retries := true, 0
	for {
		if !sleepRest(ctx, st.proc, interval, time.Now()) {
			return
		}
		switch ok := probe(ctx, st.port, st.health); {
		case ok && !healthy:
			healthy, retries = true, 0
			report(protocol.ModelServiceStatus{ModelName: modelName, IsHealthy: true})
		case ok:
			retries = 0
		default:
			if retries > st.health.MaxRetries && healthy {
				healthy = false
				report(protocol.ModelServiceStatus{ModelName: modelName, IsHealthy: false})
			}
			retries++
		}
	}
}
