from marrow_tui.cli.mcp import main

main()
