from marrow_tui.cli.main import main

main()
