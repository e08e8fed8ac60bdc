package e2e

import (
	"errors"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kfProc is a `kubefeed run` process whose readiness is read from /readyz
// (--metrics-address), not from a log line, and whose exit is observed
// without blocking.
type kfProc struct {
	cmd     *exec.Cmd
	logs    *syncBuffer
	metrics string // host:port of /metrics, /readyz
	done    chan struct{}
	waitErr error
}

// startKubefeed starts `kubefeed run --config cfgPath` with a metrics
// address; it is SIGKILLed when the test ends if still running.
func startKubefeed(t *testing.T, cfgPath string) *kfProc {
	t.Helper()
	p := &kfProc{logs: &syncBuffer{}, metrics: freeAddr(t), done: make(chan struct{})}
	p.cmd = exec.Command(kubefeedBinary(t), "run", "--config", cfgPath, "--kubeconfig", cp.Kubeconfig(),
		"--log-format", "console", "--metrics-address", p.metrics)
	p.cmd.Stderr = p.logs
	p.cmd.Stdout = p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.waitErr = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("kubefeed (pid %d) log:\n%s", p.cmd.Process.Pid, p.logs.String())
		}
	})
	return p
}

// startKubefeedReady starts kubefeed and waits until /readyz answers 200
// (every scope synced).
func startKubefeedReady(t *testing.T, cfgPath string) *kfProc {
	t.Helper()
	p := startKubefeed(t, cfgPath)
	p.waitReady(t)
	return p
}

func (p *kfProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitReady polls /readyz; a process that exits first fails the test.
func (p *kfProc) waitReady(t *testing.T) {
	t.Helper()
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(90 * time.Second)
	last := ""
	for {
		if p.exited() {
			t.Fatalf("kubefeed exited (%v) before it was ready:\n%s", p.waitErr, p.logs.String())
		}
		resp, err := hc.Get("http://" + p.metrics + "/readyz")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status + " " + strings.TrimSpace(string(b))
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed not ready after 90s (last /readyz: %s):\n%s", last, p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitExit waits up to d for the process to end and returns its exit code
// (-1 when it did not end in time).
func (p *kfProc) waitExit(d time.Duration) int {
	select {
	case <-p.done:
	case <-time.After(d):
		return -1
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode()
	}
	if p.waitErr != nil {
		return -1
	}
	return 0
}

// term sends SIGTERM and waits up to d for the exit code.
func (p *kfProc) term(d time.Duration) int {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	return p.waitExit(d)
}

// waitLogContains waits until the log holds text.
func (p *kfProc) waitLogContains(t *testing.T, text string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for !strings.Contains(p.logs.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("kubefeed never logged %q:\n%s", text, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
