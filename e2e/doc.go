// Package e2e holds the end-to-end tests that run the host binary as a real
// process and drive its pages in headless Chromium (through chromedp).
//
// It is a Go module of its own, so that chromedp and its protocol packages
// stay out of the main module's go.mod and so out of every pack author's.
// `make test` installs Debian's chromium with scripts/install-chromium.sh,
// then runs these tests from this directory:
//
//	bash scripts/install-chromium.sh
//	cd e2e && go test ./...
package e2e
