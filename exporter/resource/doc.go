// Package resource resolves the names users write in a config (pods, po,
// deployments.apps, apps/v1/deployments, widgets.example.com) into the
// Resource kubefeed watches, through the API server's discovery.
package resource
