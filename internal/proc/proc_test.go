package proc

import (
	"os/exec"
	"testing"
)

func TestAProcessIsAliveUntilItEndsAndAReusedPidIsNotIt(t *testing.T) {
	if !Alive(Self()) || !IsSelf(Self()) {
		t.Fatal("the running process is not alive")
	}
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	id := Of(cmd.Process.Pid)
	if !Alive(id) {
		t.Fatalf("%+v is not alive while running", id)
	}
	if IsSelf(id) {
		t.Fatal("another process is taken for this one")
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if Alive(id) {
		t.Fatalf("%+v is alive after it ended", id)
	}
	// The same pid with another start time is another process.
	me := Self()
	me.Start++
	if Alive(me) {
		t.Fatal("a pid with another start time counts as the same process")
	}
	if Alive(Identity{PID: me.PID, Boot: "another-boot", Start: Self().Start}) {
		t.Fatal("a process of another boot counts as alive")
	}
}
