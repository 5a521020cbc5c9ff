package main

import (
	"time"

	"github.com/packhost/packhost/plugins/sdk"
)

// Each released version of a table keeps its own model, so a step always
// sees the table as it was then. Models are never edited once released.

type userV1 struct {
	ID        uint      `gorm:"primaryKey"`
	Name      string    `gorm:"size:200;not null"`
	CreatedAt time.Time `gorm:"not null"`
}

func (userV1) TableName() string { return "users" }

type userV2 struct {
	ID        uint      `gorm:"primaryKey"`
	Name      string    `gorm:"size:200;not null"`
	Email     *string   `gorm:"size:320;uniqueIndex:idx_users_email"`
	CreatedAt time.Time `gorm:"not null"`
}

func (userV2) TableName() string { return "users" }

type userV3 struct {
	ID         uint       `gorm:"primaryKey"`
	Name       string     `gorm:"size:200;not null"`
	Email      *string    `gorm:"size:320;uniqueIndex:idx_users_email"`
	Role       string     `gorm:"size:32;not null;default:member"`
	DisabledAt *time.Time `gorm:""`
	CreatedAt  time.Time  `gorm:"not null"`
}

func (userV3) TableName() string { return "users" }

var usersTable = sdk.Table{
	Name: "users",
	Steps: []sdk.Step{
		{Summary: "creates users (id, name, created_at)", Up: sdk.AutoMigrate(&userV1{})},
		{Summary: "adds users.email with a unique index", Up: sdk.AutoMigrate(&userV2{})},
		{Summary: "adds users.role (default member) and users.disabled_at", Up: sdk.AutoMigrate(&userV3{})},
	},
	Create: sdk.AutoMigrate(&userV3{}),
}

type auditV1 struct {
	ID     uint      `gorm:"primaryKey"`
	At     time.Time `gorm:"not null"`
	Actor  string    `gorm:"size:200;not null"`
	Action string    `gorm:"size:200;not null"`
}

func (auditV1) TableName() string { return "audit_log" }

type auditV2 struct {
	ID     uint      `gorm:"primaryKey"`
	At     time.Time `gorm:"not null;index:idx_audit_log_at"`
	Actor  string    `gorm:"size:200;not null"`
	Action string    `gorm:"size:200;not null"`
	Detail string    `gorm:"not null;default:''"`
}

func (auditV2) TableName() string { return "audit_log" }

var auditTable = sdk.Table{
	Name: "audit_log",
	Steps: []sdk.Step{
		{Summary: "creates audit_log (id, at, actor, action)", Up: sdk.AutoMigrate(&auditV1{})},
		{Summary: "adds audit_log.detail and an index on at", Up: sdk.AutoMigrate(&auditV2{})},
	},
}
