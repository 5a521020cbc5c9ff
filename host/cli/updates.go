package cli

var (
	keygenCmd    = notYet("keygen")
	packBuildCmd = notYet("pack build")
	packSignCmd  = notYet("pack sign")
)
