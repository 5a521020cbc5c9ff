package main

import (
	"testing"

	"gorm.io/gorm"

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

func TestUsersSurviveABackupAndRestore(t *testing.T) {
	sdktest.CheckBackupRestore(t, pack, func(t *testing.T, db *gorm.DB) {
		email := "ada@example.com"
		for _, u := range []userV3{{Name: "Ada", Email: &email, Role: "admin"}, {Name: "Grace", Role: "member"}} {
			if err := db.Create(&u).Error; err != nil {
				t.Fatal(err)
			}
		}
	})
}
