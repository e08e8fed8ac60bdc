//go:build linux

package event

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// Strings that end exactly where readable memory ends (the next page is
// mapped PROT_NONE): a scan that loads a word past the string's last byte
// faults. Every length 0..80 and every special piece at every offset of
// the last 24 bytes.
func TestAppendStringReadsNothingPastTheEnd(t *testing.T) {
	page := os.Getpagesize()
	mem, err := syscall.Mmap(-1, 0, 2*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatalf("mmap: %v", err)
	}
	defer func() { _ = syscall.Munmap(mem) }()
	if err := syscall.Mprotect(mem[page:], syscall.PROT_NONE); err != nil {
		t.Fatalf("mprotect: %v", err)
	}
	at := func(content string) string {
		n := len(content)
		copy(mem[page-n:page], content)
		return unsafe.String(&mem[page-n], n)
	}
	for n := 0; n <= 80; n++ {
		checkAppendString(t, at(strings.Repeat("p", n)))
		for _, sp := range quotingSpecials {
			for i := max(0, n-24); i+len(sp) <= n; i++ {
				s := strings.Repeat("a", i) + sp
				s += strings.Repeat("b", n-len(s))
				checkAppendString(t, at(s))
			}
		}
	}
}
