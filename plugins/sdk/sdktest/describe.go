package sdktest

import (
	"context"
	"fmt"
	"testing"

	"github.com/packhost/packhost/internal/lint"
	"github.com/packhost/packhost/internal/packpb"
	"github.com/packhost/packhost/plugins/sdk"
)

// CheckDescribe checks what the host will see of the pack before it runs
// anything: a valid id and semver version, tables with a step for every
// version, each with a summary, a Describe answer through the gRPC
// service that matches the declaration, and no step that loses data
// (a destructive lint finding, as `host pack build` reports them) without
// being marked Destructive.
func CheckDescribe(t *testing.T, pack sdk.Pack) {
	t.Helper()
	for _, p := range describeProblems(t, pack) {
		t.Error(p)
	}
}

func describeProblems(t testing.TB, pack sdk.Pack) []string {
	t.Helper()
	if err := pack.Validate(); err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for _, tb := range pack.Tables {
		for i, s := range tb.Steps {
			if s.Summary == "" {
				problems = append(problems, fmt.Sprintf("table %s: the step to version %d has no Summary; operators read it before upgrading", tb.Name, i+1))
			}
		}
	}
	c := Start(t, pack, Database{})
	info, err := c.client.Describe(context.Background(), &packpb.DescribeRequest{})
	if err != nil {
		return append(problems, fmt.Sprintf("describe: %v", err))
	}
	if info.Id != pack.ID || info.Version != pack.Version {
		problems = append(problems, fmt.Sprintf("describe says %s %s, the pack declares %s %s", info.Id, info.Version, pack.ID, pack.Version))
	}
	if len(info.Tables) != len(pack.Tables) {
		return append(problems, fmt.Sprintf("describe lists %d tables, the pack declares %d", len(info.Tables), len(pack.Tables)))
	}
	for i, ti := range info.Tables {
		tb := pack.Tables[i]
		if ti.Name != tb.Name || int(ti.CodeVersion) != tb.Version() || len(ti.Steps) != tb.Version() {
			problems = append(problems, fmt.Sprintf("describe lists table %s at version %d with %d steps, the pack declares %s at %d",
				ti.Name, ti.CodeVersion, len(ti.Steps), tb.Name, tb.Version()))
		}
	}
	return append(problems, lintProblems(c, pack)...)
}

// lintProblems names the steps with a destructive lint finding that are not
// marked Destructive: `host pack build` refuses them.
func lintProblems(c *Conn, pack sdk.Pack) []string {
	schemas, err := c.Schemas(context.Background(), "sqlite")
	if err != nil {
		return []string{fmt.Sprintf("compute the schema of every version: %v", err)}
	}
	var problems []string
	for _, tb := range pack.Tables {
		list := schemas[tb.Name]
		for i, s := range tb.Steps {
			if s.Destructive || i >= len(list) {
				continue
			}
			before := ""
			if i > 0 {
				before = list[i-1]
			}
			found, err := lint.Step("sqlite", before, list[i])
			if err != nil {
				problems = append(problems, err.Error())
				continue
			}
			for _, f := range found {
				if f.Destructive() {
					problems = append(problems, fmt.Sprintf("table %s, step %d -> %d (%q): %s %s; mark the step Destructive if that is intended, or `host pack build` refuses it",
						tb.Name, i, i+1, s.Summary, f.Rule, f.Message))
				}
			}
		}
	}
	return problems
}
