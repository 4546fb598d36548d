"""What readers get: ranking, rendering, previews, the demo; hostile text made harmless."""
