package sdk_test

import (
	"context"
	"strings"
	"testing"

	"gorm.io/gorm"

	"github.com/packhost/packhost/plugins/sdk"
)

func TestPackValidate(t *testing.T) {
	up := func(context.Context, *gorm.DB) error { return nil }
	table := func(name string) sdk.Table {
		return sdk.Table{Name: name, Steps: []sdk.Step{{Summary: "creates " + name, Up: up}}}
	}
	valid := func() sdk.Pack {
		return sdk.Pack{ID: "guestbook", Version: "1.2.0", Tables: []sdk.Table{table("entries"), table("authors")}}
	}
	tests := []struct {
		name   string
		change func(p *sdk.Pack)
		want   string // empty: valid
	}{
		{"a pack with an id, a semver version and tables with steps is valid", func(p *sdk.Pack) {}, ""},
		{"a pack without tables is valid", func(p *sdk.Pack) { p.Tables = nil }, ""},
		{"a prerelease version is valid", func(p *sdk.Pack) { p.Version = "2.0.0-rc.1" }, ""},
		{"an empty id is refused", func(p *sdk.Pack) { p.ID = "" }, `pack id "": must match`},
		{"an id with capitals is refused", func(p *sdk.Pack) { p.ID = "GuestBook" }, `pack id "GuestBook": must match`},
		{"an id of one character is refused", func(p *sdk.Pack) { p.ID = "g" }, `pack id "g": must match`},
		{"an id starting with a dot is refused", func(p *sdk.Pack) { p.ID = ".guest" }, `pack id ".guest": must match`},
		{"an id with a slash is refused", func(p *sdk.Pack) { p.ID = "guest/book" }, `pack id "guest/book": must match`},
		{"an id of 65 characters is refused", func(p *sdk.Pack) { p.ID = strings.Repeat("a", 65) }, "must match"},
		{"a version of two numbers is refused", func(p *sdk.Pack) { p.Version = "1.2" }, `pack guestbook: version "1.2" is not semver`},
		{"a version with a v is refused", func(p *sdk.Pack) { p.Version = "v1.2.0" }, `pack guestbook: version "v1.2.0" is not semver`},
		{"an empty version is refused", func(p *sdk.Pack) { p.Version = "" }, `pack guestbook: version "" is not semver`},
		{"a table without steps is refused", func(p *sdk.Pack) { p.Tables[1].Steps = nil },
			"pack guestbook: table authors has no steps; Steps[0] must create it"},
		{"a step without Up is refused", func(p *sdk.Pack) {
			p.Tables[0].Steps = append(p.Tables[0].Steps, sdk.Step{Summary: "adds entries.email"})
		}, "pack guestbook: table entries: step to version 2 has no Up function"},
		{"a table declared twice is refused", func(p *sdk.Pack) { p.Tables = append(p.Tables, table("entries")) },
			"pack guestbook: table entries is declared twice"},
		{"the host's pack_settings table is refused", func(p *sdk.Pack) { p.Tables = append(p.Tables, table("pack_settings")) },
			"pack guestbook: table pack_settings is owned by the host"},
		{"the host's schema_registry table is refused", func(p *sdk.Pack) { p.Tables = append(p.Tables, table("schema_registry")) },
			"pack guestbook: table schema_registry is owned by the host"},
		{"a table name with a dash is refused", func(p *sdk.Pack) { p.Tables[0].Name = "guest-entries" },
			`pack guestbook: table name "guest-entries": must match`},
		{"a table name with capitals is refused", func(p *sdk.Pack) { p.Tables[0].Name = "Entries" },
			`pack guestbook: table name "Entries": must match`},
		{"a dependency on itself is refused", func(p *sdk.Pack) { p.DependsOn = []string{"guestbook"} },
			"pack guestbook: depends on itself"},
		{"a dependency that is not a pack id is refused", func(p *sdk.Pack) { p.DependsOn = []string{"Core!"} },
			`pack guestbook: dependency "Core!" is not a pack id`},
		{"a prefix without slashes is refused", func(p *sdk.Pack) { p.Prefix = "guestbook" },
			`pack guestbook: prefix "guestbook" must start and end with /`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := valid()
			tt.change(&p)
			err := p.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("Validate() = nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Validate() = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}
