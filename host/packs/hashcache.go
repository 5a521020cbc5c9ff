package packs

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// HashCache remembers the binaries whose sha256 was verified, keyed by
// what the kernel says of the file: device, inode, size, modification and
// change time. An unchanged binary is then not read again at every start.
//
// What this trusts: writing a file's content, renaming another file over
// it or changing its times all give it a new inode or a new change time
// (ctime), which no unprivileged process can set back. The cache itself is
// in <root>/data (mode 0700), writable only by the host's user, who could
// as well edit the manifests; root can defeat it, as it can everything
// else the host checks.
type HashCache struct {
	path string
	mu   sync.Mutex
	m    map[string]hashEntry
	// dirty is set when Put changed the cache since Load.
	dirty bool
}

type hashEntry struct {
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Size   int64  `json:"size"`
	Mtime  int64  `json:"mtime_ns"`
	Ctime  int64  `json:"ctime_ns"`
	SHA256 string `json:"sha256"`
}

// HashCacheFile is the cache's file, relative to the system directory.
const HashCacheFile = "data/verified-binaries.json"

// LoadHashCache reads root's cache; a missing or unreadable one is empty
// (the binaries are then hashed, as without a cache).
func LoadHashCache(root string) *HashCache {
	c := &HashCache{path: filepath.Join(root, HashCacheFile), m: map[string]hashEntry{}}
	if data, err := os.ReadFile(c.path); err == nil {
		_ = json.Unmarshal(data, &c.m)
	}
	return c
}

func stamp(path string) (hashEntry, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return hashEntry{}, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return hashEntry{}, errors.New("no stat information")
	}
	return hashEntry{
		Dev: uint64(st.Dev), Ino: st.Ino, Size: fi.Size(),
		Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(),
	}, nil
}

// Verified reports whether path is unchanged since it was verified to have
// the sha256 sum.
func (c *HashCache) Verified(path, sum string) bool {
	if c == nil {
		return false
	}
	now, err := stamp(path)
	if err != nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[path]
	now.SHA256 = sum
	return ok && e == now
}

// Put records that path, as it was at before (a stamp taken before it was
// hashed), has the sum; nothing is recorded when the file changed since.
func (c *HashCache) Put(path, sum string, before hashEntry) {
	if c == nil {
		return
	}
	now, err := stamp(path)
	if err != nil || now != before {
		return
	}
	now.SHA256 = sum
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m[path] != now {
		c.m[path] = now
		c.dirty = true
	}
}

// Save writes the cache (0600) when Put changed it, dropping the entries
// of binaries that are gone. Only commands that may write the system
// directory save; `host status` never does.
func (c *HashCache) Save() error {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.dirty {
		return nil
	}
	for p := range c.m {
		if _, err := os.Stat(p); err != nil {
			delete(c.m, p)
		}
	}
	data, err := json.MarshalIndent(c.m, "", "  ")
	if err != nil {
		return err
	}
	tmp := c.path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save the verified-binary cache: %w", err)
	}
	if err := os.Rename(tmp, c.path); err != nil {
		return fmt.Errorf("save the verified-binary cache: %w", err)
	}
	c.dirty = false
	return nil
}
