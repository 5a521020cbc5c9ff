package updatezip

import (
	"archive/zip"
	"fmt"
	"path/filepath"

	"github.com/packhost/packhost/host/manifest"
)

// ReadManifest reads an update zip's pack.json and nothing else: for
// listings (installed zips, pending versions) where Inspect's checks of
// every entry are not wanted. The manifest is parsed and validated; the
// zip's other entries are not looked at.
func ReadManifest(path string) (*manifest.Manifest, error) {
	zr, err := zip.OpenReader(path)
	if err != nil {
		return nil, fmt.Errorf("%s: not a readable zip: %w", filepath.Base(path), err)
	}
	defer zr.Close()
	for _, f := range zr.File {
		if f.Name != manifest.FileName {
			continue
		}
		data, err := readEntry(f, maxManifestSize)
		if err != nil {
			return nil, fmt.Errorf("%s: read %s: %w", filepath.Base(path), manifest.FileName, err)
		}
		m, err := manifest.Parse(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
		}
		return m, nil
	}
	return nil, fmt.Errorf("%s: no %s in the zip", filepath.Base(path), manifest.FileName)
}
