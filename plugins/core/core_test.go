package main

import (
	"testing"

	"github.com/packhost/packhost/plugins/sdk/sdktest"
)

func TestEveryUpgradePathMatchesAFreshInstall(t *testing.T) {
	sdktest.CheckUpgradePaths(t, pack)
}

func TestPackIsValid(t *testing.T) {
	if err := pack.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestDescribe(t *testing.T) {
	sdktest.CheckDescribe(t, pack)
}
