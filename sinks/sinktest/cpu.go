package sinktest

import (
	"syscall"
	"testing"
	"time"
)

// CPUMeter reports the process's CPU time and voluntary context switches
// per op (a thread that parks: what goroutine wake-ups cost in system
// calls). With the server in another process, what one event costs
// kubefeed.
type CPUMeter struct {
	cpu  time.Duration
	csws int64
}

// StartCPU resets b's timer and starts measuring; allocations are
// reported too.
func StartCPU(b *testing.B) *CPUMeter {
	b.ReportAllocs()
	b.ResetTimer()
	cpu, csws := usage()
	return &CPUMeter{cpu: cpu, csws: csws}
}

// Stop stops b's timer and reports cpu-ns/op and csw/op.
func (m *CPUMeter) Stop(b *testing.B) {
	b.StopTimer()
	cpu, csws := usage()
	b.ReportMetric(float64(cpu-m.cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(csws-m.csws)/float64(b.N), "csw/op")
}

func usage() (time.Duration, int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw
}
