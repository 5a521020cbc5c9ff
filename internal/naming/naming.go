// Package naming holds the shapes of names packhost gives and accepts:
// pack ids, table names, and the UTC timestamp in file and directory names.
// Every package that checks or makes such a name uses these, so a rule
// changes in one place.
package naming

import (
	"regexp"
	"time"
)

// PackIDExpr is a pack id without anchors, for patterns that embed one
// (backup directory names, zip names).
const PackIDExpr = `[a-z0-9][a-z0-9._-]{1,63}`

// PackID is what a pack id looks like (SPEC): ^[a-z0-9][a-z0-9._-]{1,63}$.
var PackID = regexp.MustCompile(`^` + PackIDExpr + `$`)

// TableName keeps table names to what both databases accept unquoted.
var TableName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// StampLayout is the UTC timestamp in the names of backups, installed zips
// and install stages: yyyymmddThhmmssZ.
const StampLayout = "20060102T150405Z"

// StampExpr matches a StampLayout timestamp, for patterns that embed one.
const StampExpr = `\d{8}T\d{6}Z`

// Stamp formats t in UTC with StampLayout.
func Stamp(t time.Time) string { return t.UTC().Format(StampLayout) }

// ParseStamp reads a StampLayout timestamp.
func ParseStamp(s string) (time.Time, error) { return time.Parse(StampLayout, s) }

var stampIn = regexp.MustCompile(StampExpr)

// StampIn finds the last StampLayout timestamp in a file name, such as
// the one appended to an installed zip's name.
func StampIn(name string) (time.Time, bool) {
	m := stampIn.FindAllString(name, -1)
	if len(m) == 0 {
		return time.Time{}, false
	}
	t, err := ParseStamp(m[len(m)-1])
	return t, err == nil
}
