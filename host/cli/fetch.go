package cli

var updatesFetchCmd = notYet("updates fetch")
