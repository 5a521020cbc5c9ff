package packtest

import (
	"testing"
	"time"
)

// WaitFor polls ok every 20ms until it reports true, and fails the test
// when it has not after 20 seconds; what names the awaited event in the
// failure ("gave up waiting for <what>").
func WaitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
