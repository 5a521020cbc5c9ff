// Package packs finds the packs installed in a system directory, starts them
// as go-plugin subprocesses and talks to them.
package packs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/packhost/packhost/host/manifest"
)

// Dir is the folder of installed packs inside a system directory.
const Dir = "packs"

// Installed is a pack found in <root>/packs/<id>/.
type Installed struct {
	ID       string
	Dir      string
	Manifest *manifest.Manifest
	// Binary is the absolute path of this platform's executable.
	Binary string
	// SHA256 is the binary's checksum from the manifest.
	SHA256 string
	// Err is set when the pack cannot be started as installed (a missing or
	// broken manifest, no binary for this platform).
	Err error
}

// Discover lists the packs installed under root, sorted by id, the core
// pack first. A directory with a problem is listed with Err set, so one
// broken pack does not hide the others.
func Discover(root string) ([]Installed, error) {
	base := filepath.Join(root, Dir)
	entries, err := os.ReadDir(base)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list installed packs: %w", err)
	}
	var out []Installed
	for _, e := range entries {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		out = append(out, inspect(filepath.Join(base, e.Name()), e.Name()))
	}
	SortCoreFirst(out, func(p Installed) string { return p.ID })
	return out, nil
}

// SortCoreFirst sorts by id with the core pack first.
func SortCoreFirst[T any](s []T, id func(T) string) {
	sort.SliceStable(s, func(i, j int) bool {
		a, b := id(s[i]), id(s[j])
		if (a == "core") != (b == "core") {
			return a == "core"
		}
		return a < b
	})
}

func inspect(dir, name string) Installed {
	abs, err := filepath.Abs(dir)
	if err == nil {
		dir = abs
	}
	p := Installed{ID: name, Dir: dir}
	m, err := manifest.Load(filepath.Join(dir, manifest.FileName))
	if err != nil {
		p.Err = fmt.Errorf("pack %s: %w; reinstall the pack", name, err)
		return p
	}
	p.Manifest = m
	if m.ID != name {
		p.Err = fmt.Errorf("pack directory %s holds a manifest for %q; reinstall the pack", dir, m.ID)
		return p
	}
	b, err := m.BinaryFor(manifest.Platform())
	if err != nil {
		p.Err = err
		return p
	}
	p.Binary = filepath.Join(dir, filepath.FromSlash(b.Path))
	p.SHA256 = b.SHA256
	return p
}

// FileSHA256 returns the hex sha256 of the file at path.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
